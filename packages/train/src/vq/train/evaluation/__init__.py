"""Evaluation over a whole split, on one process or many: the passes behind ``val`` and
``test`` and the FID reference statistics behind ``fid``.

* ``common``: what every pass shares: the settings, the frozen meters, the val loader with
  its owned samples (``ValPass``), PNG visuals, ``Evaluation`` and weight loading;
* ``reference``: FID reference statistics (the cached file of a split, computed in the
  first pass that lacks it, or by ``fid``) and FID/IS against them;
* ``tokenizer_pass``: a tokenizer run's reconstruction, rFID, codebook and token file;
* ``ten_crop``: LlamaGen's ten-crop codes of the train split (``test --ten-crop``);
* ``generator_pass``: an AR run's loss, token accuracy and gFID.
* ``probe_pass``: a classification probe's loss and top-1/top-5 accuracy.

Import the submodule you need: this package imports none of them, so that ``fid`` does not
load the generators to compute statistics.
"""
