"""Midtraining (continued pretraining) data: a target domain plus replay of the pretraining
mixture."""
