import sys

from deploy.proving.run import main

sys.exit(main())
