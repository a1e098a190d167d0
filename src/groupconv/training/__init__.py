"""Training and the experiments: :mod:`.train` (one run, its checkpoint and metrics), :mod:`.data`
(Fashion-MNIST and the emoji set), :mod:`.filters` (pictures of learned filters) and
:mod:`.experiments` (the claims of *A Deeper Understanding of Grouped Convolution*, measured)."""
