"""Deploy tasks: `task.py predeploy` leaves a file behind, `task.py fail` fails."""

import os
import sys

what = sys.argv[1] if len(sys.argv) > 1 else "?"
release = os.environ.get("PUSHDOCK_RELEASE")
print(f"{what} task of {release} runs", flush=True)
if what == "predeploy":
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "predeploy.txt"), "w") as f:
        f.write(f"kept by predeploy of {release}\n")
if what == "fail":
    print("the chat service did not answer", file=sys.stderr, flush=True)
    sys.exit(3)
