"""Unit tests of the pumps and the drivers' shared parts, against fake transports on a virtual clock."""
