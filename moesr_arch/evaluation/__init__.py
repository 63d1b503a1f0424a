"""MoE-SR's evaluation: what validation during training and ``basicsr test`` report for a mixture.

- :mod:`.moesr`: :func:`evaluate` runs a :class:`~moesr_arch.models.moesr_model.MoESRModel` over a test set and
  reports the blend beside its baselines (the equal-budget control, the background expert alone, bicubic),
  overall and inside each category's labelled regions, with the specialisation matrix and the pictures;
- :mod:`.comparison`: the sums behind those figures and the comparison table (log and
  ``comparison_<set>.txt``);
- :mod:`.regions`: PSNR and SSIM inside a region, as BasicSR computes them on whole images;
- :mod:`.specialisation`: every expert alone scored inside every region, as a table and a heat map;
- :mod:`.report`: best values so far and the metric lines of the log and TensorBoard (BasicSR's format).
"""
