"""The exoscale API v2 provider (`cloud.provider: exoscale`), on PyPI's official `exoscale`
client. See provisioners/exoscale/provisioner.py for what maps to what."""
