"""`python -m producer.cli`, as the `producer` command."""

from producer.cli import main

main()
