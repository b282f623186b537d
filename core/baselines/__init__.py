"""The paper's comparison methods (Tables 2 and 3) and the `gemini-cmr benchmark` tables.

- `interpolation`: nearest / linear / cubic B-spline resampling of the LR stack onto the SR grid;
- `models`: U-Net, SR-GAN and SegSR-GAN generators with Gemini-GAN's input/output interface;
- `registry`: the methods, their training (by `core.train.gemini.GeminiTrainer`) and model files;
- `benchmark`: training what is missing, test-split evaluation, `table2.md`/`.csv`/`.json`.
"""
