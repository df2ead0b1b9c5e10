"""Cases, work orders, SLA timers, the agent console and follow-up surveys."""
