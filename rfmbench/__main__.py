from rfmbench.cli import main

main()
