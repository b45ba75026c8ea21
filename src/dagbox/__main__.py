from dagbox.cli import main

main()
