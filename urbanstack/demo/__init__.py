"""The Huế demo city: a dataset of FIWARE Smart Data Models entities (``hue``), plausible
measurement series (``series``) and a simulator that publishes them through the IoT agent
(``simulator``)."""
