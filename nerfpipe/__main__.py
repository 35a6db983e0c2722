from nerfpipe.cli import main

main()
