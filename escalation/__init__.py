"""Hand-offs to people: cases, work orders and their SLA times."""
