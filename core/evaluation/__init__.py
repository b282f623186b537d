"""Evaluation: metrics and the evaluations built on them, one package for the command line, training
validation, the paper's comparison tables and the scripts.

- `metrics`: Dice (3D and slice-wise), PSNR (3D, slice-wise, near the heart), SSIM, Bland-Altman, mean (sd);
- `report`: the phenotype keys the tables use, mean (sd) entries;
- `paired`: a model or the whole pipeline against HR truth on a paired dataset (`gemini-cmr evaluate`);
- `real`: the pipeline against manual labels on the acquired slices of real studies (ACDC, contours).
"""
