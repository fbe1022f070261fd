"""Layer kinds on the one basis interface: the KAN edge sum (:mod:`.layer`), GR-KAN (:mod:`.group_layer`),
AF-KAN (:mod:`.afkan_layer`), S-KAN (:mod:`.selectable_layer` and its parts) and multiplication nodes
(:mod:`.mult`), and KANbeFair's MLP with B-spline activations (:mod:`.spline_mlp`, with ``LayerStack``,
a plain stack of layers). Import the public names from :mod:`kan`."""
