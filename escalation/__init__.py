"""Hand-offs to people: cases, work orders and their SLA times.

One module per family of actions, each with its own entry points:

- ``cases``: opening a case (the assistant, the channels and agents write through here), reopening
  one, and what the console reads of it (timeline, conversation, the person's past cases)
- ``queue``: the agents' queue and who holds a case: claim, assign, transfer, idle cases released
- ``working``: working a held case: reply on the resident's channel, notes, priority, resolve
- ``timers``: SLA due times, the timer jobs that remind and breach, the sweep for lost timers
- ``paging``: emergencies: the duty chain paged until someone acknowledges, notices to supervisors
- ``surveys``: the follow-up survey (回访): sent, answered, low scores reopened, unanswered closed
- ``work_orders``: work orders and their flow 发起-分配-执行-核验-完成, hand-offs, photos
- ``callbacks``: call-backs after phone calls
- ``reports``: SLA and satisfaction reports, agents' workload
- ``policies``: configuration: SLA policies, duty chains, canned replies
- ``common``: what several of them use: the case timeline's event writer, the live notice that a
  case changed, the access checks on a case
- ``complaints``: complaints as typed rows for the opinion monitor
- ``models``, ``schemas``, ``sla`` (default times, business hours), ``tasks`` (rq jobs),
  ``views/`` (the console's API)

Escalation reads and changes a resident's conversation only through conversations.service (hand
over and back, what it remembers, a person's message to the resident); it never imports channels
or the assistant.

Everything that leaves the transaction (a timer job, a page, a live update for open consoles)
is registered with ``core.events.after_commit`` and happens only once the change is committed.
Jobs are queued by their dotted path (``"escalation.tasks.check_sla"``), so no module here imports
``tasks``, which imports them.
"""
