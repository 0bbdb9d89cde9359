"""The device's setup page: a small Flask app served by waitress inside the daemon."""
