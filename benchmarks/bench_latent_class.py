"""Latent class benchmark: our EM and Bayesian fit vs StepMix (EM) on the same data.

    .venv/bin/python benchmarks/bench_latent_class.py [--quick] [--episodes N] [--n-starts 20] [--draws 500]

Data: the six-la synthetic system (seed 11), every assessed episode, the 39 factors, K = 7
(the simulator's true classes).  Everything runs in one process, side by side, so times are
comparable on a noisy machine.  Reported: wall time of each fit; log-likelihood at each EM
solution; agreement of profiles after matching classes (max and mean |difference| of item
probabilities, largest class-share difference) and the adjusted Rand index between modal
assignments, each also against the simulator's truth.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models.latent_class.agreement import adjusted_rand_index, match_profiles  # noqa: E402
from models.latent_class.em import fit_em, pattern_loglik, posterior_membership  # noqa: E402
from models.latent_class.fit import fit_latent_class  # noqa: E402
from models.latent_class.patterns import collapse  # noqa: E402
from models.sampling import SamplerSettings  # noqa: E402
from public_data.tables import load_lsoa_table  # noqa: E402
from workflows.extract_io import load_extract  # noqa: E402
from workflows.latent_class import assessed_factors  # noqa: E402
from workflows.simulate import write_simulation  # noqa: E402

K = 7


def _modal(weights, profiles, pat):
    return posterior_membership(pat.matrix, weights, profiles).argmax(axis=1)[pat.index]


def _agreement(name, w, p, ref_w, ref_p, labels, ref_labels):
    perm = match_profiles(p, ref_p)          # estimated class matched to each reference class
    diff = np.abs(p[perm] - ref_p)
    return {"comparison": name, "max_abs_item_diff": float(diff.max()), "mean_abs_item_diff": float(diff.mean()),
            "max_abs_share_diff": float(np.abs(w[perm] - ref_w).max()),
            "ari_modal": adjusted_rand_index(labels, ref_labels)}


def _print(rows):
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:,.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                                for v in r.values()) + " |")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 episodes, short chains (a smoke run)")
    parser.add_argument("--episodes", type=int, default=0,
                        help="a seeded random sample of this many assessed episodes (default: all)")
    parser.add_argument("--n-starts", type=int, default=20, help="random EM starts, both tools (default 20)")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    args = parser.parse_args()
    from stepmix.stepmix import StepMix

    print(f"python {platform.python_version()} on {platform.machine()}, {__import__('os').cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        write_simulation(Path(tmp), "six-la", 11)
        extract, _ = load_extract(Path(tmp) / "extract.csv", load_lsoa_table(), salt=b"bench")
        truth = json.loads((Path(tmp) / "truth.json").read_text())
        true_class = pd.read_csv(Path(tmp) / "truth_episodes.csv", index_col="episode_id")["demand_class"]
    factors = assessed_factors(extract.episodes, extract.factors)
    size = 5000 if args.quick and not args.episodes else args.episodes
    if size and size < len(factors):
        factors = factors.sample(size, random_state=0)
    truth_labels = true_class.loc[factors.index].to_numpy()
    names = truth["classes"]["names"]
    truth_p = np.array([[truth["classes"]["profiles"][c][f] for f in factors.columns] for c in names])
    truth_w = np.array([np.mean(truth_labels == c) for c in names])
    X = factors.to_numpy().astype(np.int64)
    draws = 150 if args.quick else args.draws

    started = time.perf_counter()
    pat = collapse(factors)
    t_collapse = time.perf_counter() - started
    print(f"{len(factors):,} assessed episodes, {X.shape[1]} factors, {pat.n_patterns:,} unique patterns; "
          f"K = {K}; {args.n_starts} random EM starts each", flush=True)

    timings = []
    started = time.perf_counter()
    em = fit_em(pat, K, n_starts=args.n_starts, seed=0)
    t_em = time.perf_counter() - started
    timings.append({"fit": "ours: EM on weighted patterns (screen 150 its, finish best 3)", "wall_s": t_em + t_collapse,
                    "loglik": em.loglik})
    print(f"ours EM: {t_em:.1f} s", flush=True)

    started = time.perf_counter()
    sm = StepMix(n_components=K, measurement="bernoulli", n_init=args.n_starts, max_iter=1000, abs_tol=1e-10,
                 random_state=0, verbose=0, progress_bar=0)
    sm.fit(X)
    t_sm = time.perf_counter() - started
    timings.append({"fit": "StepMix EM on rows (bernoulli, n_init as ours, max_iter 1000)", "wall_s": t_sm,
                    "loglik": float(sm.score(X) * len(X))})
    print(f"StepMix: {t_sm:.1f} s", flush=True)

    started = time.perf_counter()
    sm_w = StepMix(n_components=K, measurement="bernoulli", n_init=args.n_starts, max_iter=1000, abs_tol=1e-10,
                   random_state=0, verbose=0, progress_bar=0)
    sm_w.fit(pat.matrix.astype(np.int64), sample_weight=pat.counts.astype(float))
    t_smw = time.perf_counter() - started
    ll_w = float(pat.counts @ pattern_loglik(pat.matrix, sm_w.weights_, sm_w.get_parameters()["measurement"]["pis"]))
    timings.append({"fit": "StepMix EM on weighted patterns (sample_weight)", "wall_s": t_smw, "loglik": ll_w})
    print(f"StepMix weighted: {t_smw:.1f} s", flush=True)

    settings = SamplerSettings(draws=draws, tune=draws, chains=args.chains, seed=5)
    started = time.perf_counter()
    bayes = fit_latent_class(pat, K, settings, n_starts=args.n_starts, em_seed=0)
    t_bayes = time.perf_counter() - started
    post = bayes.idata.posterior
    timings.append({"fit": f"ours: EM + Bayesian (nutpie, {args.chains} chains x {draws} draws, {draws} tune)",
                    "wall_s": t_bayes, "loglik": float("nan")})
    print(f"ours Bayesian: {t_bayes:.1f} s (sampling {post.attrs['sampling_seconds']} s)", flush=True)

    sm_p = sm.get_parameters()["measurement"]["pis"]
    sm_w_ = sm.weights_
    b_w = post["class_weight"].mean(("chain", "draw")).to_numpy()
    b_p = post["item_prob"].mean(("chain", "draw")).transpose("class", "factor").to_numpy()
    lab_em, lab_sm, lab_b = _modal(em.weights, em.profiles, pat), sm.predict(X), _modal(b_w, b_p, pat)
    agreement = [
        _agreement("StepMix vs ours (EM)", sm_w_, sm_p, em.weights, em.profiles, lab_sm, lab_em),
        _agreement("StepMix vs ours (Bayesian posterior mean)", sm_w_, sm_p, b_w, b_p, lab_sm, lab_b),
        _agreement("ours (Bayesian) vs ours (EM)", b_w, b_p, em.weights, em.profiles, lab_b, lab_em),
        _agreement("StepMix vs truth", sm_w_, sm_p, truth_w, truth_p, lab_sm, truth_labels),
        _agreement("ours (EM) vs truth", em.weights, em.profiles, truth_w, truth_p, lab_em, truth_labels),
        _agreement("ours (Bayesian) vs truth", b_w, b_p, truth_w, truth_p, lab_b, truth_labels),
    ]
    print()
    print("Wall time (one process, side by side):")
    _print(timings)
    print("Agreement after matching classes (Hungarian on profiles):")
    _print(agreement)
    print(f"Bayesian fit: max R-hat {bayes.gate['max_r_hat']:.3f}, min bulk ESS {bayes.gate['min_ess_bulk']:.0f}, "
          f"divergences {bayes.gate['divergences']}, multimodal {bayes.alignment.multimodal}")


if __name__ == "__main__":
    main()
