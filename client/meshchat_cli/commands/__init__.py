"""The commands of ``meshchat``, one module per topic."""
