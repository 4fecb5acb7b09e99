"""Preview apps per pull request (docs/previews.md): GitHub `pull_request` deliveries, handed over by the git
server's `webhook-event` trigger, deploy the PR's head as app `APP-pr-N`; `closed` and the ttl remove it.

`model.py` settings and records, `webhook.py` what a delivery decides (answered at once), `deploy.py` the work
(a worker process per action), `commands.py` `previews:*`. The git server (fetch, commit statuses) and the
services (a preview's own databases) are reached through triggers only.
"""
