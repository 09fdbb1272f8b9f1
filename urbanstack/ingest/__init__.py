"""IoT ingestion: devices publish over MQTT or HTTP and become NGSI-LD entities.

``provisioning`` and ``measures`` are the domain (FIWARE IoT Agent shapes, value
conversion; no I/O), ``registry`` the provisioning use cases, ``agent`` the batching
data path, ``mqtt`` the MQTT southbound adapter.
"""
