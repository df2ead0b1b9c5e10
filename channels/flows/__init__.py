"""One flow per entry point, each readable top to bottom: a resident's message (``message``), a
finished phone call (``call``), the answer to a survey (``survey``). A flow is where the domains
meet: the conversation (conversations), what the message asks and what to say (assistant), the
case or work order it raises (escalation), and the reply on its way (channels' delivery)."""
