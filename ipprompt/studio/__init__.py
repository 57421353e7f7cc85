"""The studio: the author's loop (pick, reroll, edit, restore, run, export) in a browser, on a local server.

A server that can start GPU jobs and write files is a target: ``security`` guards every request
(token, Host header, files confined to the run folder), ``jobs`` runs generation one job at a time
per device in a visible, cancellable queue, ``events`` streams a run's progress as server-sent
events, ``actions`` maps each button to the library call the CLI makes, and ``app`` wires them
into a Starlette application. Needs the ``studio`` extra: ``pip install "ipprompt[studio]"``.
"""
