from ogsync.cli import main

main()
