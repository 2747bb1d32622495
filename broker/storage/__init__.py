"""Tables, engines and repositories. Functions here take a Session and never commit."""
