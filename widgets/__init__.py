"""Jupyter front end: ipywidgets + plotly panels over the same backend calls as the web app."""

from widgets.panels import (
    AugmentationPanel,
    Explorer,
    GradCamPanel,
    RetrievalPanel,
    ScalingPanel,
    SelfSimilarityPanel,
)

__all__ = ["AugmentationPanel", "Explorer", "GradCamPanel", "RetrievalPanel", "ScalingPanel", "SelfSimilarityPanel"]
