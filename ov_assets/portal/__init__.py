"""The Oficina Virtual portal: a local replica (``replica``) and the Playwright scraper (``scraper``)."""
