"""From the scrape loop to Kafka: a disk spool in front of a producer thread."""
