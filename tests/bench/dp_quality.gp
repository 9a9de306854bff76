# gnuplot -e "dat='dp_quality.dat'; out='tests/bench/dp_quality.png'" tests/bench/dp_quality.gp
if (!exists("dat")) dat = 'dp_quality.dat'
if (!exists("out")) out = 'dp_quality.png'
set terminal pngcairo size 800,500 font ",11" noenhanced
set output out
set title "dp_model on Online Retail: hit-rate@10 vs ε (δ = 5e-8, M = 12 steps per customer)"
set xlabel "ε (whole stream, per customer)"
set ylabel "hit-rate@10"
set logscale x 2
set xrange [0.9:9]
set yrange [0:0.35]
set datafile missing "NaN"
set xtics (1, 2, 4, 8)
set key at graph 0.98, graph 0.55
set grid
plot dat using 1:2 with linespoints lw 2 title "private, biases only", \
     dat using 1:4 with linespoints lw 2 title "private, full model", \
     dat using 1:6 with lines dt 2 lw 2 title "non-private", \
     dat using 1:9 with lines dt 5 lw 2 title "full model, noise off (same bounds)", \
     dat using 1:8 with lines dt 4 lw 2 title "public data alone (ε = 0)", \
     dat using 1:7 with lines dt 3 lw 2 title "popular (not private)"
