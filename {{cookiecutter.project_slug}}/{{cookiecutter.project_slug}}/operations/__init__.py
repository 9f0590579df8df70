"""Running the service: serve (the api's entrypoint), budget (its connections), provision (its roles)."""
