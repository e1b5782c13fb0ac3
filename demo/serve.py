"""``gradlight demo``'s server: ``gradlight serve`` of the demo's artifact, in the fresh,
torch-free process that the demo starts once the model is trained, exported and validated. It
prints the ready link and an example only once both ports serve, so a link is never shown for
a server that did not start. Its command line (``gradlight.demo.serve``) is what the README's
``pkill -HUP -f 'gradlight( |\\.demo\\.)serve'`` finds, as it finds ``gradlight serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from gradlight.cli.flags import port
from gradlight.cli.main import build_parser, parse, run

if TYPE_CHECKING:
    from gradlight.runtime.serving.server import RunningServer

# The model's name, and its artifact directory's, so that `gradlight serve` of that directory
# serves it under the same name as the demo does.
MODEL_NAME = "assertion"

DEMO_TEXT = (
    "The patient denied any chest pain. She reported no shortness of breath. "
    "There were no signs of infection."
)


# A note longer than the model's 512-token window: the demo serves texts like it whole, read
# in overlapping windows (docs/semantics.md, "Long texts"); its one assertion is deep inside.
LONG_NOTE = " ".join(
    [
        "Chief complaint: follow-up after discharge.",
        "The patient is a 67-year-old woman with hypertension and type 2 diabetes.",
        "She was admitted last month for a urinary tract infection, treated with ceftriaxone.",
        "Her blood pressure today is 138/82 and her heart rate is 76.",
        "She walks her dog twice a day and lives with her husband.",
        "Metformin 500 mg twice daily was continued.",
        "Lisinopril 10 mg daily was continued.",
        "Her daughter accompanies her to the visit.",
        "She sleeps about seven hours a night.",
        "Her weight is 74 kg, unchanged since the last visit.",
        "She quit smoking twenty years ago.",
        "She drinks one glass of wine on weekends.",
        "Her last eye exam was in March.",
        "Foot exam shows intact sensation bilaterally.",
        "Hemoglobin A1c was 7.1 percent last week.",
        "Creatinine was 0.9 and potassium 4.2.",
        "She asks about the flu vaccine.",
        "The flu vaccine was given in the left arm.",
        "She reports good appetite.",
        "Her husband manages the household finances.",
        "She attends a water aerobics class on Tuesdays.",
        "Review of systems was otherwise unremarkable.",
        "Lungs are clear to auscultation.",
        "Heart sounds are regular without murmurs.",
        "The abdomen is soft and non-tender.",
        "She denies any chest pain on exertion.",
        "Her mood is good and she enjoys gardening.",
        "She will continue home glucose monitoring.",
        "A lipid panel will be drawn before the next visit.",
        "She was given written instructions about hypoglycemia.",
        "Her daughter will drive her to the laboratory.",
        "The next appointment is in three months.",
        "She knows to call the clinic with any new symptoms.",
        "Total time spent was 30 minutes, more than half in counseling.",
        "The plan was discussed with the patient and her daughter, who agree.",
        "Medication reconciliation was completed at this visit.",
        "Home health services are not needed at this time.",
        "She uses a pill organizer filled by her husband every Sunday.",
        "Her hearing is adequate for conversation.",
        "She was reminded to bring her glucose log to the next visit.",
        "Social work was consulted about transportation to appointments.",
        "She has a ramp at the front door of her house.",
        "Her grandson visits on Sundays and helps with groceries.",
        "Immunizations are otherwise up to date.",
        "A colonoscopy three years ago was normal.",
        "Her mammogram is due in the spring.",
        "Skin is warm and dry without rashes.",
        "Gait is steady without an assistive device.",
        "She reads the newspaper every morning.",
        "Her vision is corrected with reading glasses.",
        "She volunteers at the library once a week.",
        "Dietary counseling focused on carbohydrate portions.",
        "She prefers appointments in the morning.",
        "Her pharmacy is on Main Street near her home.",
        "Refills were sent for both medications.",
        "She was given the clinic's after-hours phone number.",
        "Questions were answered to her satisfaction.",
        "The visit summary was printed for her records.",
        "Her husband will attend the next visit as well.",
        "She left the clinic in good spirits.",
    ]
)


def print_ready(running: RunningServer) -> None:
    """The visualizer's link with an example, and the same example over gRPC."""
    address = running.address
    print()
    if running.http is not None:
        page = running.http.url
        print(f"visualizer: {page} (open it in a browser); an example:")
        print(f"  {page}#text={quote(DEMO_TEXT)}")
        print("a note longer than the model's window, read whole (its windows shown):")
        print(f"  {page}#text={quote(LONG_NOTE)}&windows=1")
    print(f"gRPC: {address} (Ctrl+C stops both). In another terminal:")
    print(f'  .venv/bin/gradlight attribute --server {address} --sentences "{DEMO_TEXT}"')
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog="gradlight demo", description=__doc__)
    own.add_argument("artifact", type=Path, metavar="ARTIFACT_DIR", help="the demo's artifact")
    own.add_argument("--port", type=port, default=50051, help="gRPC port (default 50051)")
    own.add_argument("--http-port", type=port, default=8080, help="visualizer port (default 8080)")
    given = own.parse_args(argv)
    serve = [str(given.artifact), "--name", MODEL_NAME]
    serve += ["--port", str(given.port), "--http-port", str(given.http_port)]
    serve += ["--long-texts", "windows"]  # a note longer than the window is explained whole
    args = parse(build_parser(), ["serve", *serve])
    args.command = "demo"  # errors are said as gradlight demo's
    return run(args, on_ready=print_ready)


if __name__ == "__main__":
    sys.exit(main())
