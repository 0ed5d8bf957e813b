"""Moving from Rancher 1.6's webhook service: its receivers become Receiver manifests, and the trigger
URLs it handed out keep working.

``keys`` is what the listener needs of Rancher's credentials (a key's digest, Cattle's public key for
the oldest ``?token=`` URLs); ``convert`` turns one of Rancher's stored receivers into a manifest;
``importer`` reads them from Cattle and writes the manifests.
"""
