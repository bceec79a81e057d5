"""A tiny stock list kept with the SQLAlchemy ORM."""
