"""The print-resolution finishing pass: a chosen panel enlarged N times and re-detailed.

A panel is one cell of the visual-prompt grid (512 px at the default tile), which a printed page
enlarges 2-4 times. The pass enlarges the chosen panel (Lanczos, or an ESRGAN/SwinIR-class model
loaded through spandrel) and lets FLUX Fill itself re-draw the fine detail at a low ``strength``,
in overlapping tiles blended with a cosine ramp where the panel is larger than FLUX's sweet spot.

Modules: ``tiles`` (the tiling and the blend), ``upscaler`` (spandrel models), ``flux_pass`` (the
pass itself, pure: images in, images out), ``pass_result`` (its settings, key and cost), ``apply``
(what the runners call: decide, run, commit into the run folder).
"""
