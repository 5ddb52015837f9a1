"""Super-resolution: ESRGAN-type generators, a face-specialist model and their fusion (spec part C).

Modules: :mod:`.rrdbnet` (the generator and checkpoint loading), :mod:`.discriminator`,
:mod:`.degradations` (HR -> LR pairs), :mod:`.face_mask` (eq. 2's padded Gaussian face mask and the
blend of eqs. 1 and 3), :mod:`.metrics` (PSNR/SSIM on the Y channel, as SR papers report them).
"""
