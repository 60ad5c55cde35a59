"""Bridges to other libraries, each an optional extra: :mod:`seqgan.integrations.trl` (``pip install -e
".[trl]"``): a seqgan discriminator as an online-trained reward inside TRL's GRPO and RLOO trainers."""
