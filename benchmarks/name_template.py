"""Class names in a sentence: each label text put into a template before it is encoded
(validation).

Zero-shot classifiers often embed a label in a short sentence ("This text is about
{name}.") rather than alone, since the encoder was trained on sentences. Here the template
wraps every class's label text (:func:`jaxmaml.data.label_text.label_texts`: a source's
description or the readable label) wherever ``jaxmaml eval``'s ``*_names`` methods encode
it; ``--template "{}"`` is the product. Arguments after ``--`` are :mod:`finetune_table`'s
(``table`` mode); episodes are the protocol's, so runs with different templates pair:

    python benchmarks/name_template.py --template "This text is about {}." -- table \\
        --setup D=runs/quickstart:debian --episodes 600 --batches balanced \\
        --methods cosine_centroid_names cosine_centroid_names_trans --out /tmp/tmpl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def templated(label_texts, template: str):
    """``label_texts`` whose every text is ``template.format(text)``."""

    def texts(class_names, descriptions=None):
        return [template.format(t) for t in label_texts(class_names, descriptions)]

    return texts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--template", required=True, help='with one "{}" for the label text')
    p.add_argument("rest", nargs=argparse.REMAINDER, help="-- finetune_table.py arguments")
    args = p.parse_args(argv)
    if args.template.count("{}") != 1:
        p.error(f"--template {args.template!r}: needs exactly one {{}} for the label text")

    import finetune_table

    from jaxmaml.run import data

    data.label_texts = templated(data.label_texts, args.template)
    return finetune_table.wrapped_main("name_template.py", argv, args.rest)


if __name__ == "__main__":
    sys.exit(main())
