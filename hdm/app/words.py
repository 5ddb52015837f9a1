"""What each tab of the demo says before anything runs: two or three sentences on what it shows, and a link to
the paper's equations in hdm's docs.

Links point at the docs beside the app: on a Hugging Face Space (``SPACE_ID`` set) the repository's page of
the file, else the file served by the app itself (the page allows a checkout's ``docs/``); an installed copy,
which has no docs beside it, names the file instead."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DOCS", "INTROS", "doc_url", "intro"]

#: The docs folder of a checkout (the app serves it).
DOCS = Path(__file__).resolve().parents[2] / "docs"

#: tab -> (sentences, (link text, doc file, anchor)).
INTROS = {
    "cam": ("Which pixels made a model decide? Grad-CAM, Grad-CAM++ and HDM-CAM answer with a heat map each, "
            "for the model that fits your image: the ImageNet classifier for photos when its weights can be had, "
            "face verification on dlib's face-recognition network for a face offline, the shapes classifier for "
            "hdm's benchmark images. HDM-CAM weighs each channel's Haar subbands by 3rd- and 4th-order derivatives.",
            ("HDM-CAM's equations (1-14)", "hdm_cam.md", "the-equations")),
    "subbands": ("The paper's Figure 3 for your image: the Haar wavelet subbands of the image, of one layer's most "
                 "weighted channel, and of HDM-CAM's 3rd- and 4th-order derivative maps of that channel. The table "
                 "gives the band weights W3, W4 and beta that HDM-CAM derives from them, level by level.",
                 ("eqs. 8-12 (derivative subbands and band weights)", "hdm_cam.md", "the-equations")),
    "fusion": ("Super-resolution x4 by two networks: a general one for the whole picture and a face specialist for "
               "the faces MTCNN finds, blended through a soft mask around each face. Compare with bicubic and with "
               "the general model alone, and look at the faces at full resolution below.",
               ("the fusion, eqs. 1-3", "sr.md", "facegeneral-sr-fusion")),
    "diffusion": ("Super-resolution x4 by diffusion: multi-step teachers and one-step students, each trained with "
                  "and without the multi-scale high-frequency error-map loss. The noise seed makes a result "
                  "repeatable; the zoom shows where two models disagree most.",
                  ("the high-frequency loss", "diffusion.md", "the-loss-and-its-open-choices")),
    "region": ("The fusion with a class map instead of face boxes: where HDM-CAM says the explained class is, the "
               "specialist model draws the picture, elsewhere the general one. The map comes from the model that "
               "fits the image, as in the Explain tab.",
               ("eq. 3 with a class map", "sr.md", "facegeneral-sr-fusion")),
}


def doc_url(file: str, anchor: str = "") -> str | None:
    """The URL of ``docs/<file>`` (``#anchor``) for a page of this app, or ``None`` where there is none (see the
    module docstring)."""
    space = os.environ.get("SPACE_ID")
    tail = f"#{anchor}" if anchor else ""
    if space:
        return f"https://huggingface.co/spaces/{space}/blob/main/docs/{file}{tail}"
    return f"/gradio_api/file=docs/{file}" if DOCS.is_dir() else None


def intro(tab: str) -> str:
    """Markdown: a tab's sentences and its link (or, without one, the doc's name in hdm's repository)."""
    text, (link, file, anchor) = INTROS[tab]
    url = doc_url(file, anchor)
    return f"{text} See [{link}]({url})." if url else f"{text} See {link} in docs/{file} of hdm's repository."
