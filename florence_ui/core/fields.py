"""The names of the fields every layer shares: the ``data`` keys of our ``sv.Detections``.

supervision keeps its own field names in ``sv.config`` so that the writers and
the readers of ``Detections.data`` cannot drift apart by a typo; these are ours,
kept the same way. The parser writes them; the result type, drawing, review,
the teaching view, the batch file and the exporters read them. The JSON rows of
:meth:`~florence_ui.core.result.FlorenceResult.regions` use the same names, so
each is spelled once. The values are stored (results.jsonl, the API's JSON):
changing one is a format change, not a rename.
"""

from __future__ import annotations

import supervision as sv

#: per row, its label (a category, a description or a line of OCR): supervision's own key; the parser writes it,
#: drawing, review, the batch file and every exporter read it
CLASS_NAME: str = sv.config.CLASS_NAME_DATA_FIELD
#: per row, an OCR quadrilateral, (4, 2) pixels: supervision's own key, written by ``from_vlm`` for quad answers;
#: drawing, the result JSON (``quad``) and the exporters read it
QUADS: str = sv.config.ORIENTED_BOX_COORDINATES
#: per row, the task token that produced it (review and tiling mix tasks in one picture); the parser writes it,
#: the result, review, labels and Label Studio conversion read it
SOURCE_TASK = "source_task"
#: per row, the ``<loc_N>`` bins it was read from (a list of ints, empty when unmatched); the parser writes it,
#: the teaching view's bin table and the result JSON read it
LOC_BINS = "loc_bins"
#: region tasks: per row, the pixel box (x1, y1, x2, y2) the user drew that it answers; written by
#: ``parsing.merge_rows_per_box``, read by drawing (the prompt bracket), the result JSON and review (box numbers)
PROMPT_BOX = "prompt_box"
#: per row, its polygon parts, each a (k, 2) array of pixel points (segmentation, open-vocabulary polygons; a box
#: row of a mixed answer has none); the parser writes it, masks, drawing, review and the exporters read it
POLYGONS = "polygons"

# ---- SAM refinement (issue 16): written by ``model.refine`` / ``model.sam``, read by the result JSON, the
# results file (``sam_polygons`` / ``sam_scores`` per line), labels (a refined region's geometry) and drawing
#: per row, SAM's predicted IoU of its mask (0..1, the mask decoder's own quality estimate), beside Florence-2's
#: ``confidence``; NaN for a row SAM was not asked about
SAM_SCORE = "sam_score"
#: per row, the polygon parts of SAM's mask (``sv.mask_to_polygons``), each a (k, 2) array of pixel points; an
#: empty list when the mask is empty. Florence-2's own polygons stay in ``polygons``
SAM_POLYGONS = "sam_polygons"
#: per row, the box (x1, y1, x2, y2, supervision's inclusive pixel extent) of SAM's mask; the row's ``xyxy``
#: keeps the box Florence-2 answered (what SAM was prompted with)
SAM_BOX = "sam_box"
#: click segmentation: per row, the clicks that made it, each [x, y, label] (1 positive, 0 negative)
SAM_POINTS = "sam_points"
