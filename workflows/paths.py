"""Where the repository keeps things, so no module hard-codes a path twice."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
REFERENCE_DIR = DATA_DIR / "reference"
RESULTS_DIR = REPO_ROOT / "results"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: The shared folder the raw files were first copied from (absent on a plain clone).
SHARED_RAW_DIR = REPO_ROOT.parent / "shared" / "data" / "raw"
