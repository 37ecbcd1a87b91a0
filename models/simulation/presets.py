"""Named simulation presets: which real LAs, how many LSOAs, which years.

``six-la`` mirrors the study: six real South East authorities of contrasting deprivation
(two deprived cities, a deprived-average mix, and three of the least deprived unitaries
in England), four years of referrals.  ``tiny`` (two of the smallest authorities, one
deprived and one not, whole) is for fast tests; ``national`` is every children's services
authority in England.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """What to simulate.  ``la_codes=None`` means every authority in the LSOA table."""

    name: str
    description: str
    la_codes: tuple[str, ...] | None
    years: tuple[int, ...]
    #: Keep at most this many LSOAs per LA (a stratified, seeded sample); None = all.  An
    #: extract from such a preset does not cover its LAs, so population-scale rates (which
    #: count every LSOA of an LA, zeros included) would be wrong: no shipped preset uses it.
    max_lsoa_per_la: int | None = None
    #: Multiplies every referral rate (tiny data sets stay informative at small size).
    referral_rate_multiplier: float = 1.0
    #: Share of children who are White British, by LA (synthetic; default elsewhere).
    white_british_share: dict[str, float] = field(default_factory=dict)


#: Years are DfE reporting years, named by the March they end in (2019 = Apr 2018-Mar 2019).
STUDY_YEARS = (2018, 2019, 2020, 2021)

SIX_LA = (
    "E06000044",  # Portsmouth
    "E06000045",  # Southampton
    "E06000035",  # Medway
    "E06000038",  # Reading
    "E06000037",  # West Berkshire
    "E06000041",  # Wokingham
)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="Two small contrasting LAs, whole (81 LSOAs), two years: seconds, for tests.",
        la_codes=("E06000001", "E06000017"),  # Hartlepool (deprived), Rutland (least deprived)
        years=(2020, 2021),
        referral_rate_multiplier=2.0,
        white_british_share={"E06000001": 0.95, "E06000017": 0.93},
    ),
    "six-la": Preset(
        name="six-la",
        description="Six real South East LAs of contrasting deprivation, four years (the study's size).",
        la_codes=SIX_LA,
        years=STUDY_YEARS,
        white_british_share={
            "E06000044": 0.80, "E06000045": 0.72, "E06000035": 0.82,
            "E06000038": 0.58, "E06000037": 0.87, "E06000041": 0.76,
        },
    ),
    "national": Preset(
        name="national",
        description="Every children's services authority in England, four years (millions of episodes).",
        la_codes=None,
        years=STUDY_YEARS,
    ),
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with the list of valid names in the error."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
