# issue 4: gan and dcgan, 30 minutes of training each, one thread each, side by side
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/genlearn train dcgan --out runs/dcgan-30m --quiet --set epochs=1000 time_limit=1800 eval_every=5 > runs/dcgan-30m.log 2>&1 &
.venv/bin/genlearn train gan --out runs/gan-30m --quiet --set epochs=1000 time_limit=1800 eval_every=5 > runs/gan-30m.log 2>&1 &
wait
for r in dcgan-30m gan-30m; do for m in parzen fid coverage; do
  .venv/bin/genlearn eval runs/$r --metric $m --json > runs/$r-$m.json 2>>runs/$r.log &
done; wait; done
