"""Render docs/images/phantom.png: mid-ventricular SAX and long-axis cuts of a phantom's HR truth and LR
stack at ED and ES, with label contours.

    .venv/bin/python packaging/make_phantom_figure.py [--seed 3] [--domain ukdhp-like] [--out docs/images/phantom.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gemini_cmr.core.synth import DOMAINS, make_subject  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--domain", default="ukdhp-like")
    ap.add_argument("--out", default="docs/images/phantom.png")
    ap.add_argument("--all-domains", action="store_true", help="add a row of LR mid slices per domain")
    args = ap.parse_args()
    pair = make_subject(args.seed, args.domain)
    ed, es = 0, pair.phantom.es_phase
    lr, hr = pair.lr, pair.hr
    # mid-ventricular LR slice: the middle of the slices showing LV cavity at ED and ES; HR slice at the
    # same world point
    ks = np.nonzero(((lr.labels[ed] == 1).any(axis=(1, 2))) & ((lr.labels[es] == 1).any(axis=(1, 2))))[0]
    k_lr = int(ks[len(ks) // 2])
    centre_w = lr.grid.index_to_world(np.array([(lr.image.shape[3] - 1) / 2, (lr.image.shape[2] - 1) / 2, k_lr]))
    k_hr = int(round(hr.grid.world_to_index(centre_w)[2]))
    # long-axis cut: the row through the LV cavity centroid
    jj = np.nonzero(hr.labels[ed] == 1)[1]
    j_hr = int(np.median(jj))
    j_lr = int(round(lr.grid.world_to_index(hr.grid.index_to_world(np.array([0, j_hr, 0])))[1]))
    sl, sh = lr.grid.spacing, hr.grid.spacing
    rows = [("HR truth", hr, k_hr, j_hr, sh), ("LR stack", lr, k_lr, j_lr, sl)]
    extra = [d for d in DOMAINS if d != args.domain] if args.all_domains else []
    fig, axes = plt.subplots(len(rows) + (1 if extra else 0), 4, figsize=(16, 8.4 + (4 if extra else 0)))
    colours = {1: "tab:red", 2: "tab:green", 3: "tab:blue"}
    for r, (name, st, k, j, sp) in enumerate(rows):
        vmax = np.percentile(st.image[ed], 99.5)
        for c, (t, cut) in enumerate(((ed, "sax"), (es, "sax"), (ed, "lax"), (es, "lax"))):
            ax = axes[r, c]
            if cut == "sax":
                img, lab, aspect = st.image[t, k], st.labels[t, k], sp[1] / sp[0]
            else:
                img, lab, aspect = st.image[t, :, j, :], st.labels[t, :, j, :], sp[2] / sp[0]
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
            for v, col in colours.items():
                m = (lab == v).astype(float)
                if m.any():
                    ax.contour(m, levels=[0.5], colors=col, linewidths=0.7)
            phase = "ED" if t == ed else "ES"
            ax.set_title(f"{name}, {'short axis' if cut == 'sax' else 'long-axis cut'}, {phase} (phase {t})",
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    for n, dname in enumerate(extra[:2]):
        p = make_subject(args.seed, dname)
        lab0 = p.lr.labels[0]
        ks = np.nonzero((lab0 == 1).any(axis=(1, 2)))[0]
        kk = int(ks[len(ks) // 2])
        jj = int(np.median(np.nonzero(lab0 == 1)[1]))
        sp = p.lr.grid.spacing
        vmax = np.percentile(p.lr.image[0], 99.5)
        for m, (img, aspect, what) in enumerate(((p.lr.image[0, kk], 1.0, "short axis"),
                                                  (p.lr.image[0, :, jj, :], sp[2] / sp[0], "long-axis cut"))):
            ax = axes[-1, 2 * n + m]
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
            ax.set_title(f"domain {dname}: LR {what}, ED", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    s = pair.info["summary"]
    fig.suptitle(f"Phantom seed {args.seed}, domain {args.domain}: LV EDV {s['lv_edv_ml']:.0f} mL, "
                 f"EF {100 * s['lv_ef']:.0f}%, RV EDV {s['rv_edv_ml']:.0f} mL; contours: LV cavity (red), "
                 f"LV myocardium (green), RV cavity (blue)", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
