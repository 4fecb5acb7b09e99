"""The deploy pipeline as a chain of triggers: specs (every trigger, declared once) and the chain itself."""
