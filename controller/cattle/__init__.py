"""Client for Cattle, the API of Rancher 1.x."""
