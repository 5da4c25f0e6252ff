"""Many Veche processes on one PostgreSQL database and a NATS bus (README "Many processes")."""
