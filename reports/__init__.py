"""Reports a capacity engineer can hand on: the figures (``build``), in a terminal (``terminal``) and as a
self-contained HTML page with charts (``html``, ``charts``)."""
