"""Views that explain what encoders see: each module computes one view (arrays, dataclasses, JSON-able
parameters) and draws it as a plotly figure; the app, the widgets and the CLI all call these."""
