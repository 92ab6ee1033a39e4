"""What learns: the views a method makes (`augment`), the backbones, the methods behind one
interface (`methods`, with their heads and losses), the loading of a trained method from its
checkpoint, and users' own encoders (`encoders`). Uses `core`, `store` and `data`.
"""
