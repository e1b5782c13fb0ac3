"""The README's demo: a clinical assertion classifier trained from MiniLM-L6 weights on notes
generated here (``assertion_data``), exported with ``gradlight export``'s library function and
served (``gradlight demo``). Not part of the exporter: ``gradlight.export`` only turns a model
directory into a validated artifact."""
