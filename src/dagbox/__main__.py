from dagbox.entry import main

main()
