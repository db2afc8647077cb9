"""Optional vision backbones of the EFM policy (training side); see :mod:`efm_policy.backbones.hf`."""
