"""``ipprompt eval``: measure finished runs (text alignment, theme fidelity, consistency, cost).

``metrics`` is the arithmetic, ``dino`` the DINOv2 encoder, ``report`` evaluates a run and keeps
``eval.json``, ``compare`` lines runs up side by side. Nothing here imports torch until a model
is loaded, so the storyboard can read ``eval.json`` without it.
"""
