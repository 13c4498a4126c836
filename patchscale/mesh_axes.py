"""The mesh's axis names and the default logical-axis rules, as plain data.

Kept apart from partitioning.py (which needs jax) so that the base config (defaults.py), and
with it every experiment file, loads without importing jax.
"""

AXES = ("data", "fsdp", "sequence", "tensor")

# Defaults of `mesh.rules` (config strings: mesh axes joined by commas, "" = replicated).
DEFAULT_RULES = {
    # Parameters.
    "layers": "",  # The leading axis of stacked (scanned) block parameters: every device holds every layer.
    "embed": "fsdp",  # The model width: FSDP shards every weight along it.
    "mlp": "tensor",  # Channel-mixer hidden units.
    "heads": "tensor",  # Attention and Mamba-2 heads (and whatever is laid out by head).
    # Activations.
    "act_batch": "data,fsdp",
    "act_length": "sequence",
    "act_embed": "",
    "act_mlp": "tensor",
    "act_heads": "tensor",
}
